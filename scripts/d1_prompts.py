#!/usr/bin/env python3
"""Writes data/prompts/: 4x4 Sudoku and Countdown as text prompts in d1's
answer format (`<answer>...</answer>`), for `task.kind = "prompts"`.

The test splits are d1's files (data/sudoku4/4x4_test_sudoku.csv,
data/countdown/countdown_cd3_test.jsonl), every line in file order. Train
and validation problems are generated here with a fixed seed, never equal
to a test problem (nor to each other): Sudoku from the 288 valid grids
with 8 cells blanked, Countdown from three numbers in 1..=100 and a random
expression whose exact value is an integer in 1..=100.

Standard library only:  python3 scripts/d1_prompts.py
"""

import csv
import itertools
import json
import random
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "data" / "prompts"
SEED = 20251207
TRAIN, VALIDATION = 2000, 200

SUDOKU_PROMPT = (
    "Solve the following 4x4 Sudoku puzzle: {puzzle}\n"
    "The 16 digits are the grid row by row; 0 marks an empty cell. Fill each "
    "row, column and 2x2 box with 1-4 once. Answer with the 16 digits in "
    "<answer></answer>."
)
COUNTDOWN_PROMPT = (
    "Using the numbers {numbers}, create an equation that equals {target}. "
    "Use + - * / and each number exactly once. Answer with the expression in "
    "<answer></answer>."
)


def valid_grids():
    units = [[r * 4 + c for c in range(4)] for r in range(4)]
    units += [[r * 4 + c for r in range(4)] for c in range(4)]
    units += [[b0 + o for o in (0, 1, 4, 5)] for b0 in (0, 2, 8, 10)]
    grids = []
    for cells in itertools.product(itertools.permutations("1234"), repeat=4):
        g = "".join("".join(row) for row in cells)
        if all(len({g[i] for i in u}) == 4 for u in units):
            grids.append(g)
    assert len(grids) == 288
    return grids


def sudoku(rng):
    with open(ROOT / "data/sudoku4/4x4_test_sudoku.csv") as f:
        test = [(r["Puzzle"], r["Solution"]) for r in csv.DictReader(f)]
    seen = {p for p, _ in test}
    grids = valid_grids()

    def generate(n):
        out = []
        while len(out) < n:
            solution = rng.choice(grids)
            blanks = set(rng.sample(range(16), 8))
            puzzle = "".join("0" if i in blanks else d for i, d in enumerate(solution))
            if puzzle not in seen:
                seen.add(puzzle)
                out.append((puzzle, solution))
        return out

    def record(p, s):
        return {
            "prompt": SUDOKU_PROMPT.format(puzzle=p),
            "answer": f"<answer>{s}</answer>",
            "puzzle": p,
            "solution": s,
        }

    return {
        "train": [record(*x) for x in generate(TRAIN)],
        "validation": [record(*x) for x in generate(VALIDATION)],
        "test": [record(*x) for x in test],
    }


def expressions(nums):
    """Every expression over the three numbers, each used once, with its value."""
    ops = "+-*/"

    def apply(a, op, b):
        if op == "/" and b == 0:
            return None
        return {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else None}[op]

    for a, b, c in itertools.permutations(nums):
        for o1, o2 in itertools.product(ops, repeat=2):
            ab = apply(Fraction(a), o1, Fraction(b))
            if ab is not None:
                yield f"({a}{o1}{b}){o2}{c}", apply(ab, o2, Fraction(c))
            bc = apply(Fraction(b), o2, Fraction(c))
            if bc is not None:
                yield f"{a}{o1}({b}{o2}{c})", apply(Fraction(a), o1, bc)


def countdown(rng):
    test = []
    with open(ROOT / "data/countdown/countdown_cd3_test.jsonl") as f:
        for line in f:
            r = json.loads(line)
            nums = [int(x) for x in r["input"].split(",")]
            target = int(r["output"])
            expr = next(e for e, v in expressions(nums) if v == target)
            test.append((nums, target, expr))
    seen = {(tuple(sorted(n)), t) for n, t, _ in test}

    def generate(n):
        out = []
        while len(out) < n:
            nums = [rng.randint(1, 100) for _ in range(3)]
            candidates = [(e, v) for e, v in expressions(nums) if v is not None]
            expr, value = rng.choice(candidates)
            if value.denominator != 1 or not 1 <= value <= 100:
                continue
            key = (tuple(sorted(nums)), int(value))
            if key not in seen:
                seen.add(key)
                out.append((nums, int(value), expr))
        return out

    def record(nums, target, expr):
        return {
            "prompt": COUNTDOWN_PROMPT.format(numbers=nums, target=target),
            "answer": f"<answer>{expr}</answer>",
            "numbers": nums,
            "target": target,
        }

    return {
        "train": [record(*x) for x in generate(TRAIN)],
        "validation": [record(*x) for x in generate(VALIDATION)],
        "test": [record(*x) for x in test],
    }


def main():
    rng = random.Random(SEED)
    for name, splits in (("sudoku4", sudoku(rng)), ("countdown", countdown(rng))):
        d = OUT / name
        d.mkdir(parents=True, exist_ok=True)
        for split, records in splits.items():
            with open(d / f"{split}.jsonl", "w") as f:
                for r in records:
                    f.write(json.dumps(r) + "\n")
            print(f"{d / split}.jsonl: {len(records)} records")


if __name__ == "__main__":
    main()
