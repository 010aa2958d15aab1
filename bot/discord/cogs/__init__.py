"""The bot's cogs, each loaded as an extension by :class:`bot.discord.bot.MoodBot`.

``owner`` (the ``sync`` text command) and ``mood`` (the ``/mood`` group) are here; ``queue``
and ``admin`` join them (and :data:`bot.discord.bot.EXTENSIONS`) when written.
"""
