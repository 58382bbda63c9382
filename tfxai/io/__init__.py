"""What tfxai writes to disk, written so that a user's mistake or a crash cannot destroy data.

- :mod:`.atomic`: files and folders written atomically (a crash never leaves half of one), JSON,
  formula-safe CSV, a full disk named in one line.
- :mod:`.output_folder`: :class:`OutputFolder`, the folders tfxai writes into (never onto an
  input, never over a file it did not write), and :class:`FolderLock`, one command at a time.
- :mod:`.model_files`: ``.keras`` files with the facts needed to decide stored inside, loaded
  safely; the run configuration beside them; library versions.
"""
