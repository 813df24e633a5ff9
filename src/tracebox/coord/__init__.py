"""Multi-agent coordination on a bucket: agents, leased steps, memory, mailboxes,
artifacts, and the append-only event log that replays as a timeline."""
