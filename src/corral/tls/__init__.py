"""The cluster's trust: its certificate authority, certificates, TLS contexts and join tokens.

``pki`` makes and signs certificates (the ``cryptography`` package, no I/O); ``contexts`` turns
them into ``ssl`` contexts for the API, its clients and the agents' listeners; ``tokens`` is the
``K10<CA hash>::<secret>`` join token and the CA download that it pins. It sits in the lowest
layer: the store (embedded etcd), the API, the roles and the CLI all use it.
"""
