"""Watch a trained model's recurrent cells: trace, figures, corpus statistics (`seq2seq inspect`)."""
