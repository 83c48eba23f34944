"""The merchant dashboard: staff sign-in (auth_routes), pages (routes), their service and web glue."""
