"""piuparts-ng: install, upgrade and purge Debian packages in throwaway
chroots and report, with the blame on the right package, what they leave
behind."""

__version__ = "0.1.0"
