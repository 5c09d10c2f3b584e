// login
