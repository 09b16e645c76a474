"""When do a search's trials leave the CTC blank plateau? Per trial: the first report whose val WER
is below 100 %, as a share of the search's budget (``max_t`` reports), from the experiment folder.

Usage::

    python benchmarks/plateau.py runs/search/fsdd_digits_asha            # table + verdict
    python benchmarks/plateau.py runs/search/synth_asha --json out.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, write_json  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("experiment")
    p.add_argument("--json", help="also write the table and verdict here")
    args = p.parse_args()
    from asr_tune.config import config_from_dict
    from asr_tune.training.run import report_budget
    from asr_tune.tuning.folder import read_folder

    folder = read_folder(args.experiment)
    budget = report_budget(config_from_dict(folder.config, args.experiment))
    rows = []
    for t in folder.trials:
        h = t.history
        if h.empty or "val_wer" not in h:
            continue
        wer = h["val_wer"].tolist()
        first = next((i + 1 for i, w in enumerate(wer) if w < 100.0), None)
        rows.append({"trial": t.trial_id, "reports": len(wer), "first_below_100": first,
                     "share_of_budget": None if first is None else first / budget,
                     "best_val_wer": min(wer)})
    ok = [r for r in rows if r["share_of_budget"] is not None and r["share_of_budget"] <= 0.25]
    print_table(rows, ["trial", "reports", "first_below_100", "share_of_budget", "best_val_wer"],
                title=f"{args.experiment}: budget {budget} reports")
    print(f"{len(ok)}/{len(rows)} trials left 100 % val WER within the first quarter of the budget")
    if args.json:
        write_json(args.json, {"experiment": args.experiment, "budget": budget, "trials": rows,
                               "within_first_quarter": len(ok), "n_trials": len(rows)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
