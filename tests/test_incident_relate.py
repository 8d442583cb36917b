"""Related incidents: the indexed lookup must list exactly what comparing every pair would,
cut at the limit, in the same order (same token first, then report order)."""

import random

from tokentrail.rules.incidents import Incident, _relate


def _incident(n, rng):
    pick = lambda pool, k: sorted(rng.sample(pool, rng.randint(0, k)))  # noqa: E731
    return Incident(id=f"TTI-{n:04d}", title="t", severity="high", first_seen=None, last_seen=None,
                    findings=[f"f{n}"], rules=["TT001"], reasons=[],
                    tokens=pick([f"tok{i}" for i in range(12)], 2),
                    holders=pick([f"h{i}" for i in range(6)], 1),
                    addresses=pick(["203.0.113.7", "10.0.0.1", "198.51.100.2", "192.0.2.9"], 2))


def _every_pair(incidents, limit):
    out = {}
    for n, inc in enumerate(incidents):
        rows = []
        for m, other in enumerate(incidents):
            if m == n:
                continue
            why = [f"same {label} " + ", ".join(sorted(set(getattr(inc, attr)) & set(getattr(other, attr))))
                   for label, attr in (("holder", "holders"), ("token", "tokens"), ("address", "addresses"))
                   if set(getattr(inc, attr)) & set(getattr(other, attr))]
            if why:
                rows.append((not (set(inc.tokens) & set(other.tokens)), m, "; ".join(why)))
        rows.sort()
        out[inc.id] = ([{"id": incidents[m].id, "reason": r} for _, m, r in rows[:limit]], len(rows) > limit)
    return out


def test_indexed_related_lists_match_every_pair_comparison():
    for seed in range(25):
        rng = random.Random(seed)
        incidents = [_incident(n, rng) for n in range(rng.randint(1, 60))]
        limit = rng.choice([1, 3, 5, 100])
        expected = _every_pair(incidents, limit)
        _relate(incidents, limit)
        for inc in incidents:
            assert (inc.related, inc.related_truncated) == expected[inc.id], (seed, inc.id)


def test_a_cut_list_says_so_in_json_and_an_uncut_one_adds_nothing():
    shared = dict(title="t", severity="high", first_seen=None, last_seen=None, rules=["TT001"], reasons=[],
                  tokens=[], holders=[], addresses=["203.0.113.7"])
    incidents = [Incident(id=f"TTI-{n}", findings=[str(n)], **shared) for n in range(5)]
    _relate(incidents, 2)
    assert [r["id"] for r in incidents[0].related] == ["TTI-1", "TTI-2"]
    assert incidents[0].as_dict()["related_truncated"] is True
    _relate(incidents, 10)
    assert len(incidents[0].related) == 4 and "related_truncated" not in incidents[0].as_dict()
