#!/usr/bin/env python3
"""A cogrpo reward plugin speaking JSON lines (standard library only).

Scores a text completion by the share of its words that are real words of a
reference corpus (by default Tiny Shakespeare's training part): a crude but
real "does it write English" reward for the `text` task.

Protocol (docs/reward-protocol.md): one request per line on stdin, one reply
per line on stdout; anything for humans goes to stderr.

    [[rewards.terms]]
    kind = "subprocess"
    name = "words"
    command = ["python3", "examples/rewards/word_reward.py", "data/tinyshakespeare/input.txt"]
"""

import json
import re
import sys

PROTOCOL = "cogrpo-reward/1"
WORD = re.compile(r"[A-Za-z']+")


def load_vocabulary(path, share=0.9):
    """Lower-cased words of the first `share` of the corpus (its training part)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return {w.lower() for w in WORD.findall(text[: int(len(text) * share)])}


def score_item(item, vocabulary):
    words = WORD.findall(item["completion"])
    if not words:
        return 0.0, 0
    known = sum(1 for w in words if w.lower() in vocabulary)
    return known / len(words), len(words)


def reply_to(request, vocabulary):
    """The reply to one request; malformed requests get an error reply."""
    batch_id = request.get("batch_id") if isinstance(request, dict) else None
    if not isinstance(request, dict) or request.get("protocol") != PROTOCOL:
        return {"protocol": PROTOCOL, "batch_id": batch_id, "error": f"expected protocol {PROTOCOL}"}
    try:
        scored = [score_item(item, vocabulary) for item in request["items"]]
    except (KeyError, TypeError) as e:
        return {"protocol": PROTOCOL, "batch_id": batch_id, "error": f"bad item: {e!r}"}
    return {
        "protocol": PROTOCOL,
        "batch_id": batch_id,
        "scores": [s for s, _ in scored],
        "parts": {"num_words": [n for _, n in scored]},
    }


def main():
    corpus = sys.argv[1] if len(sys.argv) > 1 else "data/tinyshakespeare/input.txt"
    vocabulary = load_vocabulary(corpus)
    print(f"word_reward: {len(vocabulary)} words from {corpus}", file=sys.stderr)
    for line in sys.stdin:
        try:
            request = json.loads(line)
        except json.JSONDecodeError as e:
            request = {"error": str(e)}
        sys.stdout.write(json.dumps(reply_to(request, vocabulary)) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
