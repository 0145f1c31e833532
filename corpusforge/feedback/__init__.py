"""Human feedback: the web app where people rank the model's answers, rate chat replies and write demonstrations
(`app`), the store they land in (`store`: SQLite, or PostgreSQL for a team), Parquet export and preference-file import
(`exchange`), and scripted labelers that use the same HTTP API (`labelers`). See docs/feedback.md."""
