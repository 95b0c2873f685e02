"""The guide's HAProxy `listen stats` section (../shared/docs/guide.md, step 1), as an
operator following the guide pastes it: the lab tests that set balancers up by hand first
(test_adopt_lab.py, test_balancers_lab.py) share this one copy."""

STATS = """listen stats
  bind 127.0.0.1:9000
  mode http
  stats enable
  stats hide-version
  stats refresh 10s
  stats show-node
  stats uri /stats
"""
