"""Modal screens: action menu, forms, pickers, confirm dialog, help, charts."""
