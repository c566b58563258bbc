"""What a value that reaches a host's shell may look like: one definition for models and plans.

Pure (no Django): the plan builders check every spec against these again
before a command is built, and the models' validators refuse them at input.
"""

import re

HOST_NAME_PATTERN = r"\A[a-z][a-z0-9-]{0,31}\Z"
HOST_NAME_HELP = "Lower-case letters, digits and '-', a letter first, at most 32."
IFNAME_PATTERN = r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,14}\Z"
IFNAME_HELP = "A Linux interface name: at most 15 characters."
PATH_PATTERN = r"\A(/[A-Za-z0-9._+-]+)+/?\Z"
PATH_HELP = "An absolute path of letters, digits, '.', '_', '+', '-'."
CMDLINE_PATTERN = r"\A[A-Za-z0-9._,=:/+ -]*\Z"
CMDLINE_HELP = "Kernel arguments: letters, digits, spaces and . _ , = : / + -"
SSH_USER_PATTERN = r"\A[a-z_][a-z0-9_-]{0,31}\Z"
IMAGE_NAME_PATTERN = r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z"
FLAVOR_NAME_PATTERN = r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,31}\Z"

HOST_NAME_RE = re.compile(HOST_NAME_PATTERN)
IFNAME_RE = re.compile(IFNAME_PATTERN)
PATH_RE = re.compile(PATH_PATTERN)
CMDLINE_RE = re.compile(CMDLINE_PATTERN)
