#!/usr/bin/env python3
"""Parse iscsi-test-cu verbose (-v) output, compare with an expectations file, print a
table, exit 1 on any failure, unexpected skip or unparsable log.

usage: cunit_report.py LOG EXPECTATIONS [--title TEXT]

Expectations file: one entry a line, '#' comments.
    skip  <Suite.Test glob>  <reason>    test may be skipped (it may also run and pass)
    fail  <Suite.Test glob>  <reason>    known failure (only for reference peers like tgt)
A test counts as skipped when it printed "[SKIPPED]" (the suite's way of saying an
optional command or feature is absent) before CUnit reported its result.
"""
import fnmatch
import re
import sys

TEST_RE = re.compile(r"^  Test: (.+?) \.\.\.(.*)$")
SUITE_RE = re.compile(r"^Suite: (.+)$")
SUMMARY_RE = re.compile(r"^\s+tests\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$")


def parse(lines):
    tests, suite, cur, summary = [], None, None, None
    for line in lines:
        m = SUMMARY_RE.match(line)
        if m:
            summary = tuple(int(x) for x in m.groups())
            continue
        m = SUITE_RE.match(line)
        if m:
            suite, cur = m.group(1).strip(), None
            continue
        m = TEST_RE.match(line)
        if m:
            cur = {"name": f"{suite}.{m.group(1)}", "result": None, "msgs": [], "asserts": []}
            tests.append(cur)
            rest = m.group(2)
        elif cur is None:
            continue
        else:
            rest = line
        if cur["result"] is None:
            # CUnit prints "passed"/"FAILED" after the test's messages: right after "..."
            # or at the start of a line (the suite's own messages are indented).
            tok = next((t for t in ("passed", "FAILED") if rest.startswith(t)), None)
            if tok:
                cur["result"] = tok
            elif rest.strip():
                cur["msgs"].append(rest.strip())
        else:
            a = re.match(r"^\s+\d+\. (.*)$", line)
            if a and cur["result"] == "FAILED":
                cur["asserts"].append(a.group(1).strip())
    return tests, summary


def load_expectations(path, exp=None, depth=0):
    """Entries: 'skip|fail <glob> <reason>'; 'include <file>' (relative to this file)."""
    import os
    exp = [] if exp is None else exp
    with open(path) as f:
        for n, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(None, 2)
            if parts[0] == "include" and len(parts) == 2 and depth < 4:
                load_expectations(os.path.join(os.path.dirname(path), parts[1]), exp, depth + 1)
                continue
            if len(parts) < 3 or parts[0] not in ("skip", "fail"):
                sys.exit(f"{path}:{n}: expected 'skip|fail <Suite.Test glob> <reason>'")
            exp.append({"kind": parts[0], "glob": parts[1], "reason": parts[2], "hits": 0})
    return exp


def match(exp, kind, name):
    for e in exp:
        if e["kind"] == kind and fnmatch.fnmatchcase(name, e["glob"]):
            e["hits"] += 1
            return e
    return None


def clip(s, n):
    return s if len(s) <= n else s[: n - 3] + "..."


def main():
    args = sys.argv[1:]
    title = None
    if "--title" in args:
        i = args.index("--title")
        title = args[i + 1]
        del args[i : i + 2]
    if len(args) != 2:
        sys.exit(__doc__)
    log_path, exp_path = args
    with open(log_path, errors="replace") as f:
        lines = f.read().splitlines()
    tests, summary = parse(lines)
    exp = load_expectations(exp_path)

    rows, bad = [], 0
    n_pass = n_fail = n_skip = n_skip_bad = n_fail_known = 0
    for t in tests:
        skipped_msgs = [m for m in t["msgs"] if "[SKIPPED]" in m]
        if t["result"] == "FAILED" or t["result"] is None:
            n_fail += 1
            detail = next((m for m in t["msgs"] if "[FAILED]" in m), None) or \
                (t["asserts"][0] if t["asserts"] else "no result (run interrupted?)")
            detail = detail.replace("[FAILED]", "").strip()
            e = match(exp, "fail", t["name"])
            if e:
                n_fail_known += 1
                rows.append(("FAIL(known)", t["name"], f"{detail}  [{e['reason']}]"))
            else:
                bad += 1
                rows.append(("FAIL", t["name"], detail))
        elif skipped_msgs:
            n_skip += 1
            why = skipped_msgs[0].replace("[SKIPPED]", "").strip()
            e = match(exp, "skip", t["name"])
            if e:
                rows.append(("skip", t["name"], f"{why}  [expected: {e['reason']}]"))
            else:
                n_skip_bad += 1
                bad += 1
                rows.append(("SKIP!", t["name"], f"{why}  [UNEXPECTED: not in {exp_path}]"))
        else:
            n_pass += 1

    print()
    print("=" * 100)
    print(title or f"iscsi-test-cu results from {log_path}")
    print("=" * 100)
    if rows:
        w = max(len(r[1]) for r in rows)
        print(f"{'RESULT':<12} {'TEST':<{w}}  DETAIL")
        for r in rows:
            print(f"{r[0]:<12} {r[1]:<{w}}  {clip(r[2], 160)}")
        print("-" * 100)
    print(f"tests run {len(tests)}: passed {n_pass}, skipped {n_skip} "
          f"({n_skip - n_skip_bad} expected, {n_skip_bad} unexpected), failed {n_fail}"
          + (f" ({n_fail_known} known, reference peer only)" if n_fail_known else ""))

    if summary is None:
        print("ERROR: no CUnit 'Run Summary' in the log: iscsi-test-cu was killed, timed out "
              "or crashed. Last lines:")
        for line in lines[-25:]:
            print("   | " + line)
        bad += 1
    else:
        total, ran, passed, failed, _inactive = summary
        print(f"CUnit summary: tests total {total}, ran {ran}, passed {passed}, failed {failed}")
        if ran != len(tests) or failed != n_fail:
            print(f"ERROR: parsed {len(tests)} tests / {n_fail} failures but CUnit reports "
                  f"{ran} / {failed}: the log format is not what this parser expects")
            bad += 1
    unused = [e for e in exp if e["kind"] == "skip" and e["hits"] == 0]
    if unused:
        print(f"note: {len(unused)} allowed-skip entries did not skip this run (now supported, "
              "or not in this run): " + ", ".join(e["glob"] for e in unused[:12])
              + (" ..." if len(unused) > 12 else ""))
    print("RESULT:", "PASS" if bad == 0 else f"FAIL ({bad} problem(s))")
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
