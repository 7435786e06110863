#!/usr/bin/env python3
"""Generate docs/compatibility.md from the interoperability matrix's results.

    python3 tests/interop/gen_compat.py RESULTS_DIR OUTPUT

RESULTS_DIR holds the JSON lines the matrix tests wrote (tests/it/interop/, run with
KALANDRA_INTEROP_RESULTS=RESULTS_DIR); each line is one
cell. tests/interop/limitations.json gives the reason of every known limitation a cell names.
tests/interop/matrix.sh runs the matrix and then this script. Standard library only.

A cell run by several tests counts once: it passes only if every run of it passed.
"""

import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# The order of the page: git's transports first, then the independent servers.
SERVER_ORDER = {"git": 0, "dulwich": 1, "jgit": 2}
TRANSPORT_ORDER = {"file": 0, "git": 1, "http": 2, "ssh": 3}

# What a cell shows, by outcome; worse outcomes win when one cell ran more than once.
SYMBOL = {
    "pass": "pass",
    "fail": "**FAIL**",
    "limitation": "limitation",
    "unsupported": "n/a",
    "gated": "not run",
}
RANK = {"unsupported": 0, "pass": 1, "gated": 2, "limitation": 3, "fail": 4}


def version_key(version):
    parts = []
    for part in version.replace("-", ".").split("."):
        parts.append((0, int(part), "") if part.isdigit() else (1, 0, part))
    return parts


def endpoint_key(e):
    return (
        SERVER_ORDER.get(e["server"], 9),
        [(-a, -b, c) for a, b, c in version_key(e["version"])],
        TRANSPORT_ORDER.get(e["transport"], 9),
        e["protocol"],
    )


def endpoint_id(e):
    return (e["server"], e["version"], e["transport"], e["protocol"])


def short(e):
    transport = {"file": "file://", "git": "git://", "http": "http", "ssh": "ssh"}
    return "%s %s %s %s" % (e["server"], e["version"], transport[e["transport"]], e["protocol"])


def normalized(detail, limit=400):
    """A detail without what differs from cell to cell: URLs of cell repositories, object ids."""
    text = " ".join(detail.split())
    text = re.sub(r"\S*/cells/\d+/(up|down)\.git", lambda m: m.group(1).upper(), text)
    text = re.sub(r"\b[0-9a-f]{40}([0-9a-f]{24})?\b", "<oid>", text)
    text = text.replace("`", "'")
    return text if len(text) <= limit else text[:limit] + " ..."


def load_cells(results):
    cells = []
    names = sorted(n for n in os.listdir(results) if n.endswith(".jsonl"))
    if not names:
        sys.exit("gen_compat.py: no *.jsonl results in %s" % results)
    for name in names:
        with open(os.path.join(results, name), encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    cell = json.loads(line)
                except ValueError as err:
                    sys.exit("gen_compat.py: %s:%d: %s" % (name, number, err))
                cell["_source"] = name
                cells.append(cell)
    return cells


def merge(cells, key):
    """One cell per key: the worst outcome of its runs."""
    out = {}
    for cell in cells:
        k = key(cell)
        if k not in out or RANK[cell["outcome"]] > RANK[out[k]["outcome"]]:
            out[k] = cell
    return out


def sync_table(lines, cells, hash_name, endpoints, limitation_numbers):
    ups = [e for e in endpoints if any(endpoint_id(c["up"]) == endpoint_id(e) for c in cells)]
    downs = [e for e in endpoints if any(endpoint_id(c["down"]) == endpoint_id(e) for c in cells)]
    if not ups:
        return
    by_pair = {(endpoint_id(c["up"]), endpoint_id(c["down"])): c for c in cells}
    lines.append("### %s" % hash_name)
    lines.append("")
    lines.append("Rows are upstreams, columns downstreams (numbered as in the list of servers).")
    lines.append("")
    number = {endpoint_id(e): i + 1 for i, e in enumerate(endpoints)}
    lines.append("| UP \\ DOWN | " + " | ".join("%d" % number[endpoint_id(d)] for d in downs) + " |")
    lines.append("|---|" + "---|" * len(downs))
    for up in ups:
        row = []
        for down in downs:
            cell = by_pair.get((endpoint_id(up), endpoint_id(down)))
            row.append(cell_text(cell, limitation_numbers))
        lines.append("| %d. %s | %s |" % (number[endpoint_id(up)], short(up), " | ".join(row)))
    lines.append("")


def cell_text(cell, limitation_numbers):
    if cell is None:
        return ""
    text = SYMBOL[cell["outcome"]]
    if cell.get("limitation"):
        text += " [L%d]" % limitation_numbers[cell["limitation"]]
    return text


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: gen_compat.py RESULTS_DIR OUTPUT")
    results, output = sys.argv[1], sys.argv[2]
    with open(os.path.join(HERE, "limitations.json"), encoding="utf-8") as f:
        limitations = json.load(f)["limitations"]
    reasons = {lim["id"]: lim for lim in limitations}
    cells = load_cells(results)
    for cell in cells:
        if cell.get("limitation") and cell["limitation"] not in reasons:
            sys.exit(
                "gen_compat.py: %s names limitation %r, which tests/interop/limitations.json "
                "does not explain" % (cell["_source"], cell["limitation"])
            )

    sync = [c for c in cells if c["kind"] == "sync"]
    helper = [c for c in cells if c["kind"] == "helper"]
    endpoints = {}
    for c in sync:
        for side in ("up", "down"):
            endpoints[endpoint_id(c[side])] = c[side]
    for c in helper:
        endpoints[endpoint_id(c["server"])] = c["server"]
    endpoints = sorted(endpoints.values(), key=endpoint_key)

    used = []
    for c in cells:
        lim = c.get("limitation")
        if lim and lim not in used:
            used.append(lim)
    # Limitations no cell names (v0 only, one connection) still describe servers on the page.
    servers_on_page = {e["server"] for e in endpoints}
    for lim in limitations:
        named = {s.strip() for s in lim["server"].split(",")}
        if lim["id"] not in used and named & servers_on_page:
            used.append(lim["id"])
    limitation_numbers = {lim: i + 1 for i, lim in enumerate(used)}

    lines = [
        "<!-- GENERATED FILE, DO NOT EDIT. Made by tests/interop/matrix.sh, which runs the",
        "     interoperability matrix and then tests/interop/gen_compat.py. -->",
        "",
        "# Compatibility",
        "",
        "This page is generated from the outcomes of the interoperability matrix "
        "(`tests/it/interop/`) by `tests/interop/matrix.sh`; "
        "do not edit it by hand. Every server below ran on this machine, started by the test "
        "harness on 127.0.0.1.",
        "",
        "A `kalandra sync` cell mirrors a fresh repository from UP into an empty DOWN, changes "
        "upstream (a fast-forward, a forced update, a moved annotated tag and a deleted branch), "
        "syncs again, then syncs once more and must change nothing. After each sync the report, "
        "downstream's refs (equal to upstream's branches and tags) and "
        "`git fsck --connectivity-only` downstream are checked.",
        "",
        "- **pass**: every step passed.",
        "- **FAIL**: a step failed; see *Failures* below.",
        "- **limitation [Ln]**: a known limitation of a server, pinned by the cell; see "
        "*Known limitations*.",
        "- **n/a [Ln]**: not run, because a server cannot do it.",
        "- **not run**: known broken in kalandra and switched off until fixed (see the note).",
        "- empty: not part of the matrix.",
        "",
        "## Servers",
        "",
        "| # | Server | Version | Transport | Protocol |",
        "|---|---|---|---|---|",
    ]
    for i, e in enumerate(endpoints):
        lines.append(
            "| %d | %s | %s | %s | %s |"
            % (i + 1, e["server"], e["version"], e["transport"], e["protocol"])
        )
    lines.append("")
    lines.append(
        "git's transports: `file` (kalandra runs `git upload-pack`/`git receive-pack`), "
        "`git` (`git daemon`), `http` (`git http-backend` behind nginx), `ssh` (OpenSSH's sshd). "
        "Their v0 rows are the same servers held to protocol v0 (`GIT_PROTOCOL` dropped). "
        "The protocol version is upload-pack's: receive-pack speaks only v0, so as a downstream a "
        "v0 row is the same server configured differently. gitolite runs git's servers behind "
        "its access checks (`gitolite-shell` under sshd). "
        "dulwich `git` is `TCPGitServer`, dulwich `http` is `dulwich.web`; JGit `git` is "
        "`jgit daemon`."
    )
    lines.append("")

    lines.append("## `kalandra sync`")
    lines.append("")
    merged = merge(sync, lambda c: (endpoint_id(c["up"]), endpoint_id(c["down"]), c["hash"]))
    for hash_name in ("sha1", "sha256"):
        of_hash = [c for c in merged.values() if c["hash"] == hash_name]
        sync_table(lines, of_hash, hash_name, endpoints, limitation_numbers)

    classified = {}
    for c in sync:
        kinds = c.get("classified")
        if kinds:
            seen = classified.setdefault(endpoint_id(c["up"]), (set(), set()))
            seen[0].add(str(kinds.get("fast-forward")))
            seen[1].add(str(kinds.get("forced")))
    if classified:
        lines.append("### How the incremental sync classified the updates")
        lines.append("")
        lines.append(
            "The `kind` the report gave the fast-forward and the forced update, by upstream "
            "(whatever the downstream; cells that failed later included). Telling them apart takes a commits-only fetch, which "
            "needs upstream to offer `filter`; without it an update upstream still has the old "
            "commit of is `undecidable` (see [mirror semantics](mirror-semantics.md#fast-forward-forced-tag-moved))."
        )
        lines.append("")
        lines.append("| Upstream | fast-forward reported as | forced update reported as |")
        lines.append("|---|---|---|")
        for e in endpoints:
            seen = classified.get(endpoint_id(e))
            if seen:
                lines.append(
                    "| %s | %s | %s |"
                    % (short(e), ", ".join("`%s`" % k for k in sorted(seen[0])), ", ".join("`%s`" % k for k in sorted(seen[1])))
                )
        lines.append("")

    helper_merged = merge(helper, lambda c: (endpoint_id(c["server"]), c["operation"]))
    # The operations in the order the tests ran them.
    operations = []
    for c in helper:
        if c["operation"] not in operations:
            operations.append(c["operation"])
    if helper_merged:
        lines.append("## Remote helper")
        lines.append("")
        lines.append(
            "git runs `git-remote-kalandra` for `kalandra::UP=>DOWN` URLs, here with UP and "
            "DOWN on the server of the row (two repositories; for dulwich's git://, which "
            "serves one connection at a time, DOWN is on a second instance [L5]): "
            "`ls-remote`, `clone`, `fetch` "
            "and `pull` read UP (`fetch, git in v0` with `git -c protocol.version=0`, which "
            "takes the helper's `fetch` path); `push` makes DOWN's ref name an object that UP "
            "has, `push a non-tip` one that no ref of UP names; `push ff` fast-forwards it, "
            "`push force` rewinds one (refused without `--force`, DOWN unchanged), `push tag` "
            "pushes an annotated tag, `push delete` deletes a branch; `push from a shallow "
            "clone` pushes from a `--depth 1` clone a new branch, its fast-forward, and a "
            "non-fast-forward that must be refused."
        )
        lines.append("")
        lines.append("| Server | " + " | ".join("`%s`" % op for op in operations) + " |")
        lines.append("|---|" + "---|" * len(operations))
        for e in endpoints:
            row = [
                cell_text(helper_merged.get((endpoint_id(e), op)), limitation_numbers)
                for op in operations
            ]
            if any(row):
                lines.append("| %s | %s |" % (short(e), " | ".join(row)))
        lines.append("")
        gated = sorted(
            {(c["env"], c.get("reason", "")) for c in helper_merged.values() if c["outcome"] == "gated"}
        )
        if gated:
            lines.append(
                "*not run*: known bugs of the remote helper, being fixed; these cells run when "
                "the variable named is set to 1:"
            )
            lines.append("")
            for env, reason in gated:
                lines.append("- `%s`: %s" % (env, reason))
            lines.append("")

    lines.append("## Known limitations")
    lines.append("")
    for lim in used:
        entry = reasons[lim]
        lines.append("- **L%d** (`%s`, %s): %s" % (limitation_numbers[lim], lim, entry["server"], entry["reason"]))
        details = sorted(
            {normalized(c["detail"]) for c in cells if c.get("limitation") == lim and c.get("detail")}
        )
        for detail in details:
            lines.append("  What kalandra does: `%s`" % detail)
    lines.append("")

    failures = [c for c in list(merged.values()) + list(helper_merged.values()) if c["outcome"] == "fail"]
    lines.append("## Failures")
    lines.append("")
    if not failures:
        lines.append("None: every cell that ran passed or hit a known limitation.")
    # One entry per distinct failure, with the cells that show it.
    groups = {}
    for c in failures:
        first = (c.get("detail", "").strip().splitlines() or [""])[0]
        groups.setdefault((c.get("step", "?"), normalized(first)), []).append(c)
    for (step, first), group in sorted(groups.items(), key=lambda g: -len(g[1])):
        lines.append("- Failed at %s (%d cells): `%s`" % (step, len(group), first))
        for c in group:
            if c["kind"] == "sync":
                what = "%s -> %s (%s)" % (short(c["up"]), short(c["down"]), c["hash"])
            else:
                what = "helper `%s` against %s" % (c["operation"], short(c["server"]))
            lines.append("  - %s" % what)
    lines.append("")

    text = "\n".join(lines)
    with open(output, "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    main()
