"""Console mode (``mer console``): the bot's slash commands typed as text, no Discord.

The same command tree, service and database as the bot: a typed line becomes the interaction
Discord would send (:mod:`.interaction`, read by :mod:`.parse`), runs through the tree, and
the answers are shown as text with their files saved (:mod:`.text`, :mod:`.session`); lines
come from a prompt or a script (:mod:`.reader`).
"""
