"""``python -m bot.player``: what ``mer listen`` runs (see :mod:`bot.player.main`)."""

from bot.player.main import main

raise SystemExit(main())
