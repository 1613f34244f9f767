"""Give the records of one arm in one regime another arm's name, where a library change moved
what the old arm's options choose (the automatic taps) and a named arm now describes the runs.

Only ``arm``, ``taps_from``, ``default`` and ``description`` change; every measurement and the
training config stay as recorded. The new arm must exist in ``run_experiments.ARMS`` and name
a tap set that holds exactly the taps the runs trained on; the script refuses otherwise, and a
repeated command changes nothing. Usage::

    python benchmarks/experiments/rename_arm.py --regime unet-digits64 \\
        --arm default-auto --to default-depth-spread [--records docs/results]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from run_experiments import ARMS, REGIMES, TAP_SETS, named_taps  # noqa: E402


def rename(path: Path, regime: str, arm: str, new_arm: str) -> int:
    """Rename ``arm`` to ``new_arm`` in the records at ``path``; return how many changed."""
    options, description = ARMS[new_arm]
    model = REGIMES[regime]["model"]
    if options.get("taps_from") not in TAP_SETS.get(model, {}):
        raise SystemExit(f"{new_arm} takes its taps from the set {options.get('taps_from')!r}, "
                         f"which TAP_SETS does not hold for {model}; nothing was changed.")
    taps = list(named_taps(regime, options["taps_from"]))
    lines = path.read_text().splitlines()
    renamed = 0
    for index, line in enumerate(lines):
        run = json.loads(line)
        if run["arm"] != arm:
            continue
        if run["taps"] != taps:
            raise SystemExit(f"{path}: seed {run['seed']} of {arm} trained on {run['taps']}, "
                             f"not on {new_arm}'s taps {taps}; nothing was changed.")
        run.update(arm=new_arm, taps_from=options["taps_from"], default=False,
                   description=description)
        lines[index] = json.dumps(run)
        renamed += 1
    temporary = path.with_suffix(".jsonl.tmp")
    temporary.write_text("".join(f"{line}\n" for line in lines))
    os.replace(temporary, path)
    return renamed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--regime", required=True)
    parser.add_argument("--arm", required=True, help="the recorded arm to rename")
    parser.add_argument("--to", required=True, dest="new_arm", choices=sorted(ARMS))
    parser.add_argument("--records", type=Path,
                        default=Path(__file__).parents[2] / "docs" / "results")
    options = parser.parse_args()
    count = rename(options.records / f"{options.regime}.jsonl", options.regime, options.arm,
                   options.new_arm)
    print(f"{count} records of {options.arm} are now {options.new_arm}")


if __name__ == "__main__":
    main()
