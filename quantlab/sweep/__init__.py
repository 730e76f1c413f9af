"""`quantlab sweep`: a grid of labs (models × schemes × SoCs) fanned out on Ray, merged into one comparison report."""
