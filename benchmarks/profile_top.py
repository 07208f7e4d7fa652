"""The heaviest functions of a py-spy profile (``run.py --profile DIR`` writes them):

    python benchmarks/profile_top.py DIR/b2-1234.speedscope.json [--top 25] [--grep bot/]

Per function: the share of samples it was on the stack (inclusive) and on top
(self), over every thread; idle threads (waiting in ``select``/``epoll``, a lock, a
condition) are left out, so the shares are of the time spent working.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

IDLE = ("select", "poll", "epoll", "wait", "_wait", "acquire", "sleep", "accept", "recv_into")


def top(path: Path, count: int, grep: str) -> str:
    data = json.loads(path.read_text())
    frames = data["shared"]["frames"]
    inclusive: Counter[int] = Counter()
    own: Counter[int] = Counter()
    total = 0
    for profile in data["profiles"]:
        for sample, weight in zip(profile["samples"], profile["weights"], strict=False):
            if not sample or frames[sample[-1]]["name"] in IDLE:
                continue
            total += weight
            own[sample[-1]] += weight
            for index in set(sample):
                inclusive[index] += weight
    lines = [f"{path.name}: {total:.1f} s of work sampled", "incl%  self%  function (file:line)"]
    for index, weight in inclusive.most_common():
        frame = frames[index]
        where = f"{frame.get('file', '?')}:{frame.get('line', '?')}"
        if grep and grep not in where:
            continue
        shares = f"{100 * weight / total:5.1f}  {100 * own[index] / total:5.1f}"
        lines.append(f"{shares}  {frame['name']} ({where})")
        if len(lines) >= count + 2:
            break
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--grep", default="", help="only frames whose file contains this")
    args = parser.parse_args()
    print(top(args.profile, args.top, args.grep))
