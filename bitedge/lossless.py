"""The exact lossless check: a runtime run against the numpy reference, decided without luck.

Two correct implementations of the same ternary model differ only in the last bits of their float operations
(summation order in attention and norms, libm's exp). Everything else is exact: int8 codes times ternary weights
are integer sums, and (s / a) rescales them the same way. A last-bit difference matters only where it moves a
pre-rounding value x * a across a rounding boundary (k + 0.5): one int8 code then differs by one, and through the
KV cache it moves every later step a little. Comparing logits with a tolerance and an allowance for "a few such
steps" is luck, since where flips land depends on the CPU (numpy's SIMD paths included).

So the check works activation by activation (docs/conversion.md, "The lossless check"):
1. The runtime records every quantization it made (bitedge-run generate --dump-activations): per layer and site,
   each token's input row x, its scale a and its codes q. Its codes must be its own rounding of its own x
   (q = clamp(rint(x * a)), a = 127 / max|x|, bit for bit).
2. The reference runs the same token sequence with the runtime's (q, a) forced at every quantization, so both
   compute from the same integers everywhere and can differ only by float noise. At each quantization the
   reference's own pre-rounding values v_ref = x_ref * a_ref must equal the runtime's within PRE_ROUNDING_EPS
   codes, its scale within SCALE_RTOL, and wherever a code differs, it differs by one and v_ref lies within
   PRE_ROUNDING_EPS of the rounding boundary between the two codes.
3. The forced reference's logits must equal the runtime's within LOGIT_RTOL of the step's logit range, and the
   runtime's greedy token must be the forced reference's argmax, or within 2 * LOGIT_RTOL of it (a tie within
   float noise).
Any other difference is a bug; the error names layer, linears, token position and column.

The bounds follow from float32 rounding (unit roundoff u = 2^-24 ~ 6e-8). Between two quantizations the float
path is: a residual add, an RMSNorm (a double sum, rounded once), then for attention q.k dot products over head_dim,
a softmax over <= context positions and a weighted sum of values; for the FFN an activation and a product. Each
output element there carries a relative error of a few u per operation times the length of its longest
reduction (head_dim or positions, <= a few hundred here), i.e. <= ~1e-5 of the row's absmax in the worst case,
and x * a maps absmax to 127: 127 * 1e-5 ~ 1.3e-3 codes. PRE_ROUNDING_EPS = 2e-3 codes covers that; SCALE_RTOL
and LOGIT_RTOL are the same reasoning for a = 127 / max|x| and for the output gemv. Measured on the test models
(AMD EPYC Zen 4, 2026-12-04, numpy on its AVX-512 and on its AVX2 paths; the tests print each run's figures): the
largest pre-rounding difference 1.5e-4 codes, scale 6e-7 relative, logits 7e-7 relative: every bound has >= 13x
margin over the noise. Real bugs land far outside: a 1 % error in one layer's o_proj scale moves the next scale by
1.75e-4 relative (17x SCALE_RTOL); a wrong RoPE position, a skipped norm, a wrong KV group or a swapped unpacking
bit move scales by 3-130 % (tests/test_lossless_check.py builds each and sees it caught).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bitedge.formats.ternary import quantize_activations
from bitedge.errors import BitedgeError
from bitedge.native import ActivationRecord
from bitedge.reference import SITE_LINEARS, SITES, Reference

F32 = np.float32
PRE_ROUNDING_EPS = 2e-3  # codes: |x*a (runtime) - x*a (reference)| at every element, forced to the same integers
SCALE_RTOL = 1e-5        # |a_runtime / a_reference - 1|: a = 127 / max|x| carries x's relative noise
LOGIT_RTOL = 2e-5        # |logits (runtime) - logits (forced reference)| / max |logit| of the step


class LosslessError(BitedgeError):
    """The runtime and the reference differ beyond what two correct float implementations may."""


@dataclass
class LosslessReport:
    steps: int
    positions: int
    codes: int                  # int8 codes compared
    flipped_codes: int          # codes that differ by one at a rounding boundary (allowed)
    max_pre_rounding_diff: float  # codes
    max_scale_rel_diff: float
    max_logit_rel_diff: float
    greedy_ties: int            # steps where the runtime's token is not the argmax, inside 2 * LOGIT_RTOL

    def summary(self) -> str:
        return (f"{self.steps} steps, {self.positions} positions, {self.codes} codes: {self.flipped_codes} flipped "
                f"at a rounding boundary; max pre-rounding diff {self.max_pre_rounding_diff:.3g} codes "
                f"(bound {PRE_ROUNDING_EPS}), scale {self.max_scale_rel_diff:.3g} (bound {SCALE_RTOL}), "
                f"logits {self.max_logit_rel_diff:.3g} (bound {LOGIT_RTOL}), {self.greedy_ties} greedy ties")


def _where(layer: int, site: str, position: int, column: int | None = None) -> str:
    linears = "/".join(SITE_LINEARS[site])
    col = f" column {column}" if column is not None else ""
    return f"layer {layer} {linears} input ({site}), position {position}{col}"


class RuntimeActivations:
    """The runtime's dump regrouped: (layer, site) -> x [P, k], a [P], q [P, k] over positions 0..P-1."""

    def __init__(self, n_layers: int, records: list[ActivationRecord], n_positions: int):
        self.x: dict[tuple[int, str], np.ndarray] = {}
        self.a: dict[tuple[int, str], np.ndarray] = {}
        self.q: dict[tuple[int, str], np.ndarray] = {}
        seen: dict[tuple[int, str], np.ndarray] = {}
        for r in records:
            if not 0 <= r.layer < n_layers or not 0 <= r.site < len(SITES):
                raise LosslessError(f"activation dump: record for layer {r.layer} site {r.site} out of range")
            key = (r.layer, SITES[r.site])
            nb, k = r.x.shape
            if key not in self.x:
                self.x[key] = np.zeros((n_positions, k), F32)
                self.a[key] = np.zeros(n_positions, F32)
                self.q[key] = np.zeros((n_positions, k), np.int8)
                seen[key] = np.zeros(n_positions, bool)
            if r.pos0 < 0 or r.pos0 + nb > n_positions or self.x[key].shape[1] != k:
                raise LosslessError(f"activation dump: {_where(*key, r.pos0)}: {nb} rows of {k} do not fit the run")
            if seen[key][r.pos0:r.pos0 + nb].any():
                raise LosslessError(f"activation dump: {_where(*key, r.pos0)} recorded twice")
            seen[key][r.pos0:r.pos0 + nb] = True
            self.x[key][r.pos0:r.pos0 + nb] = r.x
            self.a[key][r.pos0:r.pos0 + nb] = r.a
            self.q[key][r.pos0:r.pos0 + nb] = r.q
        for layer in range(n_layers):
            for site in SITES:
                covered = seen.get((layer, site))
                if covered is None or not covered.all():
                    first = 0 if covered is None else int(np.flatnonzero(~covered)[0])
                    raise LosslessError(f"activation dump: {_where(layer, site, first)} was never recorded")

    def check_self_consistent(self) -> None:
        """The runtime's codes are its own rounding of its own inputs: a, q recomputed from x, bit for bit."""
        for (layer, site), x in self.x.items():
            q, a = quantize_activations(x)
            bad_a = np.flatnonzero(a[:, 0].view(np.int32) != self.a[layer, site].view(np.int32))
            if bad_a.size:
                p = int(bad_a[0])
                raise LosslessError(f"{_where(layer, site, p)}: the runtime's scale {self.a[layer, site][p]!r} is not "
                                    f"127 / max|x| of its own input ({a[p, 0]!r})")
            bad = np.argwhere(q != self.q[layer, site])
            if bad.size:
                p, c = (int(v) for v in bad[0])
                raise LosslessError(f"{_where(layer, site, p, c)}: the runtime's code {self.q[layer, site][p, c]} is "
                                    f"not the rounding of its own x * a ({q[p, c]})")


def check_lossless(reference: Reference, prompt, tokens, logits: np.ndarray, n_layers: int,
                   records: list[ActivationRecord]) -> LosslessReport:
    """Check one greedy run of the runtime (prompt, its generated tokens, the logits each was chosen from, its
    activation dump) against the reference. Raises LosslessError naming the first difference; returns the
    figures of a passing run."""
    prompt, tokens = [int(t) for t in prompt], [int(t) for t in tokens]
    logits = np.asarray(logits, F32)
    if logits.shape[0] != len(tokens):
        raise LosslessError(f"{len(tokens)} tokens but {logits.shape[0]} rows of logits")
    sequence = prompt + tokens[:-1]  # the last token is sampled, never fed
    if n_layers != reference.config.num_layers:
        raise LosslessError(f"activation dump has {n_layers} layers, the model {reference.config.num_layers}")
    runtime = RuntimeActivations(n_layers, records, len(sequence))
    runtime.check_self_consistent()

    stats = {"codes": 0, "flipped": 0, "pre": 0.0, "scale": 0.0}

    def force(layer, site, positions, x, q_ref, a_ref):
        key = (layer, site)
        x_rt, a_rt, q_rt = runtime.x[key][positions], runtime.a[key][positions], runtime.q[key][positions]
        scale_diff = np.abs(a_rt / a_ref[:, 0] - F32(1))
        v_ref = (x * a_ref).astype(F32)            # the reference's own pre-rounding values
        v_rt = (x_rt * a_rt[:, None]).astype(F32)  # the runtime's
        diff = np.abs(v_rt - v_ref)
        bad_rows = np.flatnonzero((scale_diff > SCALE_RTOL) | (diff > PRE_ROUNDING_EPS).any(axis=1))
        if bad_rows.size:  # the first position that differs: later ones may only follow from it (KV cache)
            p = int(bad_rows[0])
            if scale_diff[p] > SCALE_RTOL:
                raise LosslessError(f"{_where(layer, site, int(positions[p]))}: scale a = {float(a_rt[p]):.8g} "
                                    f"(runtime) vs {float(a_ref[p, 0]):.8g} (reference): {scale_diff[p]:.3g} "
                                    f"relative, beyond float noise ({SCALE_RTOL})")
            c = int(np.argmax(diff[p] > PRE_ROUNDING_EPS))
            raise LosslessError(f"{_where(layer, site, int(positions[p]), c)}: x * a = {v_rt[p, c]:.6f} (runtime) "
                                f"vs {v_ref[p, c]:.6f} (reference): {diff[p, c]:.3g} codes apart, beyond float noise "
                                f"({PRE_ROUNDING_EPS} codes)")
        differ = np.argwhere(q_rt != q_ref)
        for p, c in differ:
            boundary = (float(q_rt[p, c]) + float(q_ref[p, c])) / 2
            distance = abs(float(v_ref[p, c]) - boundary)
            if abs(int(q_rt[p, c]) - int(q_ref[p, c])) != 1 or distance > PRE_ROUNDING_EPS:
                raise LosslessError(f"{_where(layer, site, int(positions[p]), int(c))}: code {q_rt[p, c]} (runtime) "
                                    f"vs {q_ref[p, c]} (reference); the reference's x * a = {v_ref[p, c]:.6f} is not "
                                    f"at a rounding boundary (within {PRE_ROUNDING_EPS})")
        stats["codes"] += q_rt.size
        stats["flipped"] += len(differ)
        stats["pre"] = max(stats["pre"], float(diff.max()))
        stats["scale"] = max(stats["scale"], float(scale_diff.max()))
        return q_rt, a_rt[:, None]

    forced = np.asarray(reference.forward(sequence, quantize_hook=force), F32)[len(prompt) - 1:]
    ties, worst = 0, 0.0
    for i, token in enumerate(tokens):
        row, ours = forced[i], logits[i]
        scale = max(float(np.abs(row).max()), 1e-30)
        rel = float(np.abs(ours - row).max()) / scale
        worst = max(worst, rel)
        if rel > LOGIT_RTOL:
            c = int(np.argmax(np.abs(ours - row)))
            raise LosslessError(f"step {i} (position {len(prompt) - 1 + i}) logit {c}: {ours[c]:.6f} (runtime) vs "
                                f"{row[c]:.6f} (reference with the runtime's codes): {rel:.3g} of the range, beyond "
                                f"float noise ({LOGIT_RTOL})")
        if int(np.argmax(ours)) != token and ours[token] != ours.max():
            raise LosslessError(f"step {i}: the runtime chose {token}, not the argmax of its own logits")
        best = int(np.argmax(row))
        if token != best:
            if row[best] - row[token] > 2 * LOGIT_RTOL * scale:
                raise LosslessError(f"step {i}: the runtime chose {token} (reference logit {row[token]:.6f}), the "
                                    f"reference with the same codes {best} ({row[best]:.6f}): not a tie within float "
                                    f"noise")
            ties += 1
    return LosslessReport(len(tokens), len(sequence), stats["codes"], stats["flipped"], stats["pre"], stats["scale"],
                          worst, ties)
