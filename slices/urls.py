"""Routes of the browser designer UI (login, my slices, the designer)."""

from django.contrib.auth import views as auth_views
from django.urls import path

from . import views
from .forms import LoginForm

urlpatterns = [
    path("", views.SliceListView.as_view(), name="slice-list"),
    path("profile/", views.ProfileView.as_view(), name="profile"),
    path("slices/<int:pk>/", views.SliceDesignerView.as_view(), name="slice-designer"),
    path("slices/<int:pk>/vms/<int:vm>/console/", views.VmConsoleView.as_view(), name="vm-console"),
    path("slices/<int:pk>/vms/<int:vm>/vnc/", views.VmVncView.as_view(), name="vm-vnc"),
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="auth/login.html", authentication_form=LoginForm, redirect_authenticated_user=True
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
]
