// replays
