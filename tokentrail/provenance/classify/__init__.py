"""Classify every (token, holder) pair: owner, delegate, transport, forwarded, stolen,
suspicious or unknown, with a confidence and the evidence as reasons.

The decision order is DESIGN.md's ("Classification of each (token, holder) pair"); each step
is one WHEN of a single CASE over `token_holders` joined to `tokens`, so the whole case is
classified by one SQL statement. Claims name the intended holder; only transport evidence
(the holder id) names the presenter.

`sqlparts` holds the SQL fragments every step shares (a holder's address, its /24, private
address space, device families, the policy's questions), `steps` the decision CASE itself in
DESIGN.md's order, `evidence` the per-case tables the steps read (owners seen, each client's
usual networks, IdP sign-ins and refresh thefts by session, handovers, instance credentials
off their instance, the policy asked once per identity) and `classify`, which runs them.
"""

from .evidence import INSTANCE_OFF_SQL, classify
from .sqlparts import CLASSES, DEFAULT_SKEW_SECONDS, PolicySQL
from .steps import classification_sql

__all__ = ["CLASSES", "DEFAULT_SKEW_SECONDS", "INSTANCE_OFF_SQL", "PolicySQL", "classification_sql", "classify"]
