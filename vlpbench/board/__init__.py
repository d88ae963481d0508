"""The leaderboard: run directories → statistics → Markdown, CSV, LaTeX tables."""
