// PNG downloads of the dashboard's charts: the browser draws the chart's SVG on a canvas at twice its
// size and saves it, so the server needs no image library. Without JavaScript the buttons stay hidden
// and the SVG and CSV links remain.
"use strict";
document.querySelectorAll("button.png").forEach(function (button) {
  button.hidden = false;
  button.addEventListener("click", function () {
    var image = new Image();
    image.onload = function () {
      var canvas = document.createElement("canvas");
      canvas.width = image.naturalWidth * 2;
      canvas.height = image.naturalHeight * 2;
      var context = canvas.getContext("2d");
      context.scale(2, 2);
      context.drawImage(image, 0, 0);
      canvas.toBlob(function (blob) {
        var link = document.createElement("a");
        link.href = URL.createObjectURL(blob);
        link.download = button.dataset.name;
        document.body.appendChild(link);
        link.click();
        link.remove();
        setTimeout(function () { URL.revokeObjectURL(link.href); }, 1000);
      }, "image/png");
    };
    image.src = button.dataset.svg;
  });
});
