print("htsatd")
