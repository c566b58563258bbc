from tests.provisioning.conftest import inventory  # noqa: F401 (the fixture)
