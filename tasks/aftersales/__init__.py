"""After-sales (issue 14; A3, P1, P2): requests, assessment against the policy and the law, returns, refunds,
service jobs. Rules in ``rules``, SQL in ``store``, steps in ``landing``, ``assessment``, ``returns``, ``refunds``,
``service``."""
