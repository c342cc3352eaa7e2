from examples.plain_pytorch_demo import main


def test_demo_runs_a_few_steps(capsys):
    main(["--steps", "2"])
    out = capsys.readouterr().out
    assert "step    2/2" in out and "top detections" in out
