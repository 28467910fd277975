"""corral.scheduler: picks a node for every unscheduled container and binds it by CAS.

- ``framework``: the ``Filter``/``Scorer`` interfaces, reason constants, ``ContainerRequest`` and
  ``NodeView`` (parsed once), ``Policy``;
- ``filters``, ``scorers``: the plug-ins; ``policy.build_policy("spread"|"binpack")`` chains them;
- ``cache``: nodes and the running sums of bound and assumed containers;
- ``algorithm``: one decision (filter, adaptive sample, score) and the Pending message;
- ``loop``: ``Scheduler(store, policy=...)`` with ``await run()``: informers, queue, batched binds.
"""
