"""Ground-floor helpers every layer may use: the program set-up every command line shares
(`command_line`), progress lines (`progress`), the tf.distribute strategy (`strategy`) and the custom
ops SavedModels and tf.data graphs need (`custom_ops`)."""
