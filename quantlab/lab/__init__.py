"""`quantlab run`: the whole lab as checked, resumable stages."""
