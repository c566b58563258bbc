"""Routes of the browser designer UI."""

urlpatterns: list = []
