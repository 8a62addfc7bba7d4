"""``tc-clip serve``: open-vocabulary action recognition over HTTP, on LitServe (``pip install 'tc-clip[serve]'``).

    tc-clip serve --model exported/demo                    # 127.0.0.1:8000
    curl -F video=@clip.mp4 -F top_k=3 http://127.0.0.1:8000/predict
    curl -F video=@clip.mp4 -F 'class_names=["juggling", "cooking"]' http://127.0.0.1:8000/predict

:mod:`~tc_clip.serve.limits` and :mod:`~tc_clip.serve.video` hold the request checks and the video reading;
:mod:`~tc_clip.serve.api` (the LitAPI) and :mod:`~tc_clip.serve.server` need the ``serve`` extra.
"""

from tc_clip.serve.limits import RequestError, ServeLimits

__all__ = ["RequestError", "ServeLimits"]
