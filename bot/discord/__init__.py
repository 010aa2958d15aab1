"""The Discord front-end: :class:`~bot.discord.bot.MoodBot` and its cogs.

- :mod:`bot.discord.bot`: the bot, its command tree (errors), the extensions it loads, the
  hook the queue cog implements, and publishing (syncing) the commands.
- :mod:`bot.discord.cogs`: ``owner`` (the ``sync`` text command) and ``mood`` (``/mood``).
- :mod:`bot.discord.render`, :mod:`bot.discord.errors`: embeds, and what users are told
  when something fails.
- :mod:`bot.discord.main`: ``python -m bot.discord run|sync|commands``, which ``mer bot``
  runs in a child process (front-ends never import each other).
- :mod:`bot.discord.models`: the tables only Discord needs (guild settings, queue entries).

Like every front-end it imports :mod:`bot.service` and :mod:`bot.settings` only.
"""
