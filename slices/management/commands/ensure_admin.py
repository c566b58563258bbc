"""Create the portal's admin user if it does not exist, and say how to log in."""

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create a superuser (password from ADMIN_PASSWORD, else generated and printed) unless it exists."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--email", default="admin@localhost")

    def handle(self, *args, username: str, email: str, **options):
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        password = os.environ.get("ADMIN_PASSWORD")
        if user is not None:
            if password:
                user.set_password(password)
                user.save(update_fields=["password"])
                self.stdout.write(f"Admin user {username!r} exists; password set from ADMIN_PASSWORD.")
            else:
                self.stdout.write(f"Admin user {username!r} exists (password unchanged; set ADMIN_PASSWORD to reset).")
            return
        generated = not password
        password = password or secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email=email, password=password)
        if generated:
            self.stdout.write(self.style.SUCCESS(f"Created admin user {username!r} with password: {password}"))
        else:
            self.stdout.write(self.style.SUCCESS(f"Created admin user {username!r} (password from ADMIN_PASSWORD)."))
