print("surgeon")
