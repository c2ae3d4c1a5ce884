"""python -m lstm_cli.schema: regenerate the shipped schema files."""

from lstm_cli.schema import HERE, write_all

for path in write_all():
    print(path.relative_to(HERE.parent.parent))
