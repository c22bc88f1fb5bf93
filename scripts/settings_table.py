"""Print the settings reference table (docs/settings.md is made from it).

    python scripts/settings_table.py > /tmp/table.md
"""
from gswoole.settings import table

if __name__ == "__main__":
    print(table())
