"""The delegation graph: who handed authority to whom (act chains, exchanges, role chains)
and the flagged presentations, laid out in layers so edges run between boxes."""

from __future__ import annotations

from typing import Any

import duckdb

from tokentrail.rules.findings import Finding

from .data import fetch_rows
from .svg import Chart, fmt
from .text import shorten

MAX_GRAPH_NODES = 120

NODE_W, NODE_H, COL_GAP, ROW_GAP, G_PAD = 250, 34, 100, 22, 24


def _ident(actor: str | None, client: str | None, holder: str | None) -> str | None:
    if actor:
        return actor
    if client:
        return client if client.startswith(("client:", "arn:", "spiffe://")) else "client:" + client
    return holder


def delegation_graph(con: duckdb.DuckDBPyConnection, findings: list[Finding]) -> dict[str, Any]:
    """Who handed authority to whom: act chains (earlier actor → current actor, subject → first
    actor), logged exchanges and role chains (holder of the subject token → holder of the new
    one), and the flagged presentations (intended holder → presenter)."""
    edges: dict[tuple[str, str], dict[str, Any]] = {}
    kinds: dict[str, str] = {}

    def add(src: str | None, dst: str | None, label: str, kind: str, src_kind: str, dst_kind: str) -> None:
        if not src or not dst:
            return
        kinds.setdefault(src, src_kind)
        kinds.setdefault(dst, dst_kind)
        e = edges.setdefault((src, dst), {"labels": [], "kind": kind, "count": 0})
        if label not in e["labels"]:
            e["labels"].append(label)
        e["count"] += 1
        if kind == "flagged":
            e["kind"] = kind

    for r in fetch_rows(con, """SELECT act_chain, subject, count(*) AS n FROM tokens
                           WHERE len(coalesce(act_chain, [])) > 0 GROUP BY ALL ORDER BY ALL"""):
        chain = [a for a in r["act_chain"] if a]
        for i in range(len(chain) - 1):
            add(chain[i + 1], chain[i], "act", "act", "actor", "actor")
        if chain and r["subject"]:
            add("sub:" + r["subject"], chain[-1], "on behalf of", "act", "subject", "actor")

    for r in fetch_rows(con, """
            SELECT l.kind, l.basis, l.requested_by, l.received_by, p.current_actor AS p_actor,
                   p.client_id AS p_client, p.issued_to_holder AS p_holder,
                   c.current_actor AS c_actor, c.client_id AS c_client
            FROM links l LEFT JOIN tokens p ON p.token_key = l.parent_key
            LEFT JOIN tokens c ON c.token_key = l.child_key
            WHERE l.kind IN ('exchange', 'role-chain') ORDER BY l.ts"""):
        src = _ident(r["p_actor"], r["p_client"], r["p_holder"])
        if r["kind"] == "role-chain":
            dst = _ident(None, r["c_client"] or r["requested_by"], r["received_by"])
        else:
            dst = _ident(r["c_actor"], None, r["received_by"]) or _ident(None, r["requested_by"], None)
        # an inferred parent (lineage.py: subject token not logged) is drawn, and says so
        label = r["kind"] + (" (inferred)" if r.get("basis") == "inferred" else "")
        add(src, dst, label, "link", "client", "holder")

    flagged_nodes: set[str] = set()
    for f in findings:
        src, dst = f.intended_holder.get("id"), f.holder.get("id")
        if src and dst and src != dst:
            add(src, dst, f.rule, "flagged", "holder", "holder")
            flagged_nodes.add(dst)

    nodes = list(kinds)
    truncated = len(nodes) > MAX_GRAPH_NODES
    if truncated:
        keep = set(nodes[:MAX_GRAPH_NODES])
        nodes = nodes[:MAX_GRAPH_NODES]
        edges = {k: v for k, v in edges.items() if k[0] in keep and k[1] in keep}
    pos, routes, width, height = _layout(nodes, list(edges))

    items: list[dict[str, Any]] = []
    for (s, d), e in edges.items():
        colour = {"act": "#1f6fb2", "link": "#6a3fb5", "flagged": "#c62828"}[e["kind"]]
        label = ", ".join(e["labels"])
        path, (lx, ly) = _edge_path(pos, routes.get((s, d)), s, d)
        items.append({"type": "edge", "d": path, "colour": colour, "kind": e["kind"],
                      "dash": "5 3" if e["kind"] == "flagged" else "",
                      "label": shorten(label, 28), "lx": fmt(lx), "ly": fmt(ly),
                      "title": f"{s} → {d}: {label}"})
    for n in nodes:
        x, y = pos[n]
        kind = kinds[n]
        items.append({"type": "node", "x": fmt(x), "y": fmt(y), "w": str(NODE_W), "h": str(NODE_H),
                      "tx": fmt(x + 10), "ty": fmt(y + NODE_H / 2 + 4), "label": shorten(n, 34),
                      "title": n, "kind": kind, "flagged": n in flagged_nodes,
                      "fill": {"subject": "#f3f0e8", "actor": "#e8f0fa", "client": "#efe9f8"}.get(
                          kind, "#f4f4f4")})
    return {"chart": Chart(width=max(width, 400), height=height, items=items),
            "nodes": len(nodes), "edges": len(edges), "truncated": truncated}


def _layout(nodes: list[str], edges: list[tuple[str, str]]) -> tuple[
        dict[str, tuple[float, float]], dict[tuple[str, str], list[str]], int, int]:
    """A layered (Sugiyama-style) layout: columns by longest path, a waypoint in every column
    an edge passes through (so it runs between boxes, not across them), and rows ordered by
    the mean row of their neighbours to cut crossings. Returns box corners (waypoints too),
    each long edge's waypoints, and the canvas size."""
    layer = _layers(nodes, edges)
    vlayer = dict(layer)
    routes: dict[tuple[str, str], list[str]] = {}
    vedges: list[tuple[str, str]] = []
    for i, (s, d) in enumerate(edges):
        if s == d:
            continue
        chain = [s]
        if layer[d] - layer[s] > 1:
            for k in range(layer[s] + 1, layer[d]):
                w = f"\x00{i}:{k}"  # a waypoint; never a real identity (ids have no NUL)
                vlayer[w] = k
                chain.append(w)
            routes[(s, d)] = chain[1:]
        chain.append(d)
        vedges.extend(zip(chain, chain[1:], strict=False))
    columns: dict[int, list[str]] = {}
    for n in vlayer:
        columns.setdefault(vlayer[n], []).append(n)
    order = {n: float(i) for col in columns.values() for i, n in enumerate(col)}
    preds: dict[str, list[str]] = {n: [] for n in vlayer}
    succs: dict[str, list[str]] = {n: [] for n in vlayer}
    for s, d in vedges:
        preds[d].append(s)
        succs[s].append(d)
    for sweep in range(6):
        neighbours = preds if sweep % 2 == 0 else succs
        for col in sorted(columns, reverse=sweep % 2 == 1):
            def bary(n: str, nb: dict[str, list[str]] = neighbours) -> float:
                ys = [order[m] for m in nb[n]]
                return sum(ys) / len(ys) if ys else order[n]
            columns[col].sort(key=bary)
            for i, n in enumerate(columns[col]):
                order[n] = float(i)
    pos = {n: (float(G_PAD + col * (NODE_W + COL_GAP)), float(G_PAD + 16 + i * (NODE_H + ROW_GAP)))
           for col, members in columns.items() for i, n in enumerate(members)}
    ncols = max(columns) + 1 if columns else 1
    nrows = max((len(c) for c in columns.values()), default=1)
    return (pos, routes, max(400, G_PAD * 2 + ncols * (NODE_W + COL_GAP) - COL_GAP),
            G_PAD * 2 + 16 + nrows * (NODE_H + ROW_GAP))


def _edge_path(pos: dict[str, tuple[float, float]], waypoints: list[str] | None, s: str,
               d: str) -> tuple[str, tuple[float, float]]:
    """SVG path data for one edge, and where its label goes."""
    (sx, sy), (dx, dy) = pos[s], pos[d]
    mid = NODE_H / 2
    if s == d:  # an exchange that kept the same holder: a loop over the box
        x1, x2, y = sx + NODE_W * 0.35, sx + NODE_W * 0.65, sy
        return (f"M{fmt(x1)},{fmt(y)} C{fmt(x1)},{fmt(y - 30)} {fmt(x2)},{fmt(y - 30)} "
                f"{fmt(x2)},{fmt(y)}", (sx + NODE_W / 2, sy - 24))
    if dx <= sx:  # against the flow (a cycle): leave left, come back in from the right
        x1, y1, x2, y2 = sx, sy + mid, dx + NODE_W, dy + mid
        bend = 60.0 if dx == sx else max(60.0, (x1 - x2) / 2)
        if dx == sx:
            x1, x2 = sx + NODE_W, dx + NODE_W
            return (f"M{fmt(x1)},{fmt(y1)} C{fmt(x1 + bend)},{fmt(y1)} {fmt(x2 + bend)},{fmt(y2)} "
                    f"{fmt(x2)},{fmt(y2)}", (x1 + 48, (y1 + y2) / 2))
        return (f"M{fmt(x1)},{fmt(y1)} C{fmt(x1 - bend)},{fmt(y1)} {fmt(x2 + bend)},{fmt(y2)} "
                f"{fmt(x2)},{fmt(y2)}", ((x1 + x2) / 2, (y1 + y2) / 2 - 4))
    points = [(sx + NODE_W, sy + mid)]
    for w in waypoints or []:
        wx, wy = pos[w]
        points += [(wx, wy + mid), (wx + NODE_W, wy + mid)]
    points.append((dx, dy + mid))
    parts = [f"M{fmt(points[0][0])},{fmt(points[0][1])}"]
    for i in range(1, len(points)):
        (x1, y1), (x2, y2) = points[i - 1], points[i]
        if i % 2 == 1:  # between columns: a curve
            b = (x2 - x1) / 2
            parts.append(f"C{fmt(x1 + b)},{fmt(y1)} {fmt(x2 - b)},{fmt(y2)} {fmt(x2)},{fmt(y2)}")
        else:  # through a column, in the row kept free for it
            parts.append(f"L{fmt(x2)},{fmt(y2)}")
    if waypoints:
        (x1, y1), (x2, _) = points[1], points[2]
        label = ((x1 + x2) / 2, y1 - 4)
    else:
        (x1, y1), (x2, y2) = points[0], points[1]
        label = ((x1 + x2) / 2, (y1 + y2) / 2 - 4)
    return " ".join(parts), label


def _layers(nodes: list[str], edges: list[tuple[str, str]]) -> dict[str, int]:
    """Longest-path layering after dropping the edges that close a cycle (DFS back edges)."""
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    for s, d in edges:
        if s != d:
            succ[s].append(d)
    state: dict[str, int] = {}
    order: list[str] = []
    dag: dict[str, list[str]] = {n: [] for n in nodes}
    for root in nodes:
        if root in state:
            continue
        stack = [(root, iter(succ[root]))]
        state[root] = 1
        while stack:
            n, it = stack[-1]
            for m in it:
                if state.get(m) == 1:
                    continue  # back edge: a cycle, ignored for layering
                dag[n].append(m)
                if m not in state:
                    state[m] = 1
                    stack.append((m, iter(succ[m])))
                    break
            else:
                state[n] = 2
                order.append(n)
                stack.pop()
    layer = dict.fromkeys(nodes, 0)
    for n in reversed(order):  # topological order
        for m in dag[n]:
            layer[m] = max(layer[m], layer[n] + 1)
    return layer
