"""A math-verify worker process: JSON lines in on stdin ([completion, gold]), JSON lines out
([extracted, correct, note]). Run by reft.answers.checkers.math_verify_verdicts, which enforces the
per-item timeout by killing this process; math-verify's own (signal-based) timeouts are turned off.
"""

from __future__ import annotations

import json
import logging
import sys


def main() -> None:
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # "timeout is disabled": on purpose

    print(json.dumps("ready"), flush=True)  # the import takes seconds: not part of any item's time
    for line in sys.stdin:
        completion, gold = json.loads(line)
        try:
            answer = parse(completion, parsing_timeout=None)
            correct = verify(parse(gold, parsing_timeout=None), answer, timeout_seconds=None)
            reply = [str(answer[-1]) if answer else None, bool(correct), None]
        except Exception as error:
            reply = [None, False, f"error: {type(error).__name__}"]
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
