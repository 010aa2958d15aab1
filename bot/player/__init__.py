"""The music-player front-end (MPD); it arrives with its own issue and calls only the service."""
