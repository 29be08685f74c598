"""A soak with chaos that counts: a workflow runs for minutes under faults, and every message its
writers had acknowledged is looked for in what its readers recorded (docs/reliability.md).

Kept free of imports: ``soak.nodes`` and ``soak.records`` run inside loop pods, where only the
runtime is installed.
"""
