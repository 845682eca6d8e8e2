"""The bot's services: what a handler asks for, kept apart from Telegram's types where that is easy."""
