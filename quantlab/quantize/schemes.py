"""The scheme registry: every way quantlab can quantize main, parsed once into a frozen `Scheme`.

A scheme is named by one of three things, and `parse()` is the only place that reads them:
- a **shipped** name (`SHIPPED`; recipe JSON in quantize/recipes/): `int8`, `int16_w8`, `dynamic_int8`;
- the **searched** grammar `a16[_a8-<group>+...][_w4-<group>+...]` (int16 activations; int8 activations on the
  fully-connected groups after `_a8-`, 4-bit weights on those after `_w4-`; groups of quantize/groups.py, e.g.
  `a16_a8-lm_head`, `a16_w4-mlp_in+lm_head`): what `quantlab analyze` chooses;
- a **recipe file** `path/to/name.json` (ai-edge-quantizer recipe JSON: regex over tensor names, op type, op_config;
  later entries override earlier ones): its variant is the file's stem, which may not be a shipped or searched name.

Name grammar of shipped schemes: `int<A>` is A-bit activations and A-bit weights, `int<A>_w<W>` A-bit activations and
W-bit weights (4-bit: the fully-connected layers; other constants stay 8-bit). Activations are per tensor (int8
asymmetric, int16 symmetric: LiteRT's int16 kernels need zero point 0), weights symmetric per channel. Blockwise 4-bit
weights (ai-edge-quantizer's BLOCKWISE_32..256) are not offered: with int16 activations ai-edge-quantizer writes them
only with its checks off, and then neither LiteRT's CPU kernels ("filter->quantization.type !=
kTfLiteAffineQuantization") nor the Qualcomm compiler ("Unsupported quantization type") accept them. Every recipe keeps an RMSNorm one op: its composite has the scheme's activation type
on input and output at 16 bits (QNN rejects RmsNorm at int8, QNN error 3110), its insides float.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from quantlab.artifacts import is_reserved_variant
from quantlab.errors import UserError
from quantlab.quantize.groups import BY_NAME, FC_GROUPS, build_recipe, recipe_name


@dataclass(frozen=True)
class Shipped:
    """A shipped scheme: its recipe file in quantize/recipes/, when to choose it, and what it cost on the 270M."""

    description: str
    cost_270m: str


SHIPPED: dict[str, Shipped] = {
    "int8": Shipped("int8 activations (asymmetric; norms int16), int8 weights: the NPU's fastest path",
                    "279 MB; unusable (KL 16)"),
    "int16_w8": Shipped("int16 activations (symmetric), int8 weights per channel: accuracy close to FP32 at int8 size",
                        "276 MB; +2.2 % perplexity, KL 0.022"),
    "int16_w4": Shipped("int16 activations, 4-bit weights per channel on every fully-connected layer: what NPU runtimes "
                        "ship for ~1B LLMs (LiteRT-LM's Gemma3-1B, Qualcomm's 16a4w)",
                        "142 MB; unusable on the 270M with nearest rounding (+655 % perplexity, KL 2.0)"),
    "dynamic_int8": Shipped("float activations quantized per call, int8 weights: litert-torch's CPU (XNNPACK) recipe",
                            "276 MB; weights-only error (KL 0.005); not for the NPU"),
}
# What the lab builds unless told otherwise.
DEFAULT_SCHEMES = ("int8", "int16_w8", "int16_w4")
SEARCHED = re.compile(r"^a16(_a8-(?P<groups>[a-z_]+?(\+[a-z_]+?)*))?(_w4-(?P<w4>[a-z_]+(\+[a-z_]+)*))?$")
GRAMMAR = "a shipped name ({}), a searched name a16_a8-<group>+... (groups: {}), or a recipe .json file"


@dataclass(frozen=True)
class Scheme:
    """One way to quantize main. `name` is the variant it makes (files `<model>_main_<name>.tflite`); `origin` is
    `shipped`, `searched` or the recipe file's path; `digest` identifies the recipe's content (cache keys use it)."""

    name: str
    origin: str
    recipe_json: str
    activation_bits: int | None  # None: float activations (dynamic)
    weight_bits: int

    @property
    def recipe(self) -> list[dict]:
        """A fresh copy of the ai-edge-quantizer recipe."""
        return json.loads(self.recipe_json)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.recipe_json.encode()).hexdigest()[:16]

    @property
    def static(self) -> bool:
        """Needs calibration ranges (integer activations)."""
        return self.activation_bits is not None

    @classmethod
    def of(cls, name: str, origin: str, recipe: list[dict]) -> "Scheme":
        first = (recipe[0].get("op_config") or {}) if recipe else {}
        act = (first.get("activation_tensor_config") or {}).get("num_bits")
        weights = (first.get("weight_tensor_config") or {}).get("num_bits", 8)
        return cls(name, origin, json.dumps(recipe, sort_keys=True), act, weights)


def shipped_names() -> list[str]:
    return list(SHIPPED)


def help_line() -> str:
    """One line per shipped scheme with its measured cost, for the CLI's help."""
    return "; ".join(f"{n}: {s.cost_270m}" for n, s in SHIPPED.items())


def parse(spec: str) -> Scheme:
    """The scheme `spec` names (see the module docstring); anything else is a UserError listing what is allowed."""
    spec = str(spec)
    if spec in SHIPPED:
        text = resources.files("quantlab.quantize.recipes").joinpath(f"{spec}.json").read_text()
        return Scheme.of(spec, "shipped", json.loads(text))
    if m := SEARCHED.match(spec):
        groups = m.group("groups").split("+") if m.group("groups") else []
        w4 = m.group("w4").split("+") if m.group("w4") else []
        bad = [g for g in groups + w4 if g not in FC_GROUPS]
        if bad:
            raise UserError(f"scheme {spec!r}: unknown fully-connected group(s) {', '.join(bad)}; "
                            f"choose from {', '.join(FC_GROUPS)}")
        canonical = recipe_name(16, tuple(groups), tuple(w4))
        if canonical != spec:
            raise UserError(f"scheme {spec!r}: write its groups once each, in the order {canonical!r} does")
        return Scheme.of(spec, "searched", build_recipe(16, {g: 8 for g in groups},
                                                          weight_overrides={g: 4 for g in w4}))
    if spec.endswith(".json"):
        return _from_file(Path(spec))
    raise UserError(f"unknown scheme {spec!r}; pass " + GRAMMAR.format(", ".join(SHIPPED), ", ".join(FC_GROUPS)))


def parse_all(specs) -> tuple[Scheme, ...]:
    """Every scheme of a run (names, or Schemes already parsed); two that would make the same variant are a
    UserError."""
    if not specs:
        raise UserError("no scheme given; choose from " + ", ".join(SHIPPED) + " or recipe .json files")
    out: dict[str, tuple[str, Scheme]] = {}
    for spec in specs:
        s = spec if isinstance(spec, Scheme) else parse(spec)
        if s.name in out and out[s.name][1].digest != s.digest:
            raise UserError(f"schemes {out[s.name][0]!r} and {s.origin!r} would both make variant {s.name!r}; rename "
                            "one recipe file")
        out.setdefault(s.name, (s.origin, s))
    return tuple(s for _, s in out.values())


def _from_file(path: Path) -> Scheme:
    name = path.stem
    if SEARCHED.match(name) and path.is_file():
        searched = parse(name)  # `analyze` saves its choice as recipes/<name>.json: that file is the same scheme
        if _read_recipe(path) == searched.recipe:
            return searched
    if name in SHIPPED or SEARCHED.match(name) or is_reserved_variant(name):
        raise UserError(f"recipe file {path} would make variant {name!r}, a name quantlab reserves "
                        f"(shipped: {', '.join(SHIPPED)}; searched: a16_a8-...; fp32, embedder_*, bundle_*, *_aot_*); "
                        "rename the file")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", name):
        raise UserError(f"recipe file name {path.name!r} makes a poor file name; use letters, digits, _ . + -")
    if not path.is_file():
        raise UserError(f"recipe file {path} does not exist; pass " + GRAMMAR.format(", ".join(SHIPPED),
                                                                                   ", ".join(FC_GROUPS)))
    recipe = _read_recipe(path)
    validate_recipe(recipe, path)
    return Scheme.of(name, str(path.resolve()), recipe)


def _read_recipe(path: Path):
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON ({getattr(exc, 'msg', exc)}); fix the recipe file") from None


def validate_recipe(recipe, where: Path | str) -> None:
    """Structure, regexes, and ai-edge-quantizer's own check of every entry (algorithm, op, bit widths)."""
    if not isinstance(recipe, list) or not recipe:
        raise UserError(f"{where} must hold a non-empty JSON list of recipe entries")
    for i, entry in enumerate(recipe):
        missing = {"regex", "operation", "algorithm_key"} - set(entry if isinstance(entry, dict) else {})
        if missing:
            raise UserError(f"{where} entry {i} lacks {', '.join(sorted(missing))}; see quantlab/quantize/recipes/*.json")
        try:
            re.compile(entry["regex"])
        except re.error as exc:
            raise UserError(f"{where} entry {i}: regex {entry['regex']!r} is invalid ({exc})") from None
    from ai_edge_quantizer import recipe_manager

    try:
        recipe_manager.RecipeManager().load_quantization_recipe(recipe)
    except (ValueError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{where}: ai-edge-quantizer rejects it ({first}); fix the recipe file") from None


def group_names() -> list[str]:
    return list(BY_NAME)
