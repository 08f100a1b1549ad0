"""ROUGE-L floors of the vega mini's test set: which part of an answer the official scorer rewards.

Scores template answers on the mini's IITC test split (built exactly as `paperzoo reproduce vega --preset mini`
builds it) with the right picture and figure number and a random colour and/or kind (3 seeds each), so the
trained rows' ROUGE-L can be read against them. Writes packages/vega/results/bench/rouge_floor.json.

    python benchmarks/vega_rouge_floor.py
"""

from __future__ import annotations

import json
import random
import subprocess
import tempfile
from pathlib import Path

from paperzoo_vega.configuration import VegaConfig
from paperzoo_vega.reproduce import build_synthetic_release
from paperzoo_vega.scoring import score_iitc
from paperzoo_vega.synthetic import COLOURS, KINDS

from paperzoo_shared.config import load_config

PACKAGE = Path(__file__).resolve().parent.parent / "packages" / "vega"
VARIANTS = {
    "right picture, random colour and kind": (False, False),
    "right picture, right colour, random kind": (True, False),
    "right picture, random colour, right kind": (False, True),
    "reference answer": (True, True),
}


def main() -> None:
    cfg = load_config(VegaConfig, PACKAGE / "configs" / "mini.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        test = list(build_synthetic_release(cfg, Path(tmp))["iitc_test"])
    out = {}
    for name, (keep_colour, keep_kind) in VARIANTS.items():
        values = []
        for seed in range(3):
            rng = random.Random(seed)
            records = []
            for sample in test:  # "[Picture k](Figure. N) shows a <colour> <kind> ."
                words = sample.answer.split()
                colour = words[5] if keep_colour else rng.choice(list(COLOURS))
                kind = " ".join(words[6:-1]) if keep_kind else rng.choice(KINDS)
                records.append({**sample.record, "response": f"{' '.join(words[:4])} a {colour} {kind} ."})
            values.append(score_iitc(records)["rouge_l"])
        out[name] = values
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=PACKAGE
    ).stdout.strip()
    path = PACKAGE / "results" / "bench" / "rouge_floor.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"command": "python benchmarks/vega_rouge_floor.py", "commit": commit, "n_items": len(test),
               "rouge_l_pltrdy_per_seed": out}  # fmt: skip
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
