"""Who holds each token and should they: lineage (issued, exchanged, used), holder attribution
(agents), network matching, the deployment policy, and the classifier that joins them.

Reads the case; knows nothing of exports.
"""
