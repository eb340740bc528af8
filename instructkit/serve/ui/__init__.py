"""The web arena (issue #23): playground, anonymous battles, votes, leaderboard; see docs/serve.md."""
