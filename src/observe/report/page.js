'use strict';
(() => {
  const data = JSON.parse(document.getElementById('report-data').textContent);
  const byId = (id) => document.getElementById(id);
  const slider = byId('att-step');
  if (slider) {
    const layerSel = byId('att-layer'), headSel = byId('att-head');
    const steps = [...new Set(data.runs.flatMap((r) => r.steps))].sort((a, b) => a - b);
    const figs = [...document.querySelectorAll('figure.att')];
    slider.max = steps.length - 1;
    slider.value = steps.length - 1;
    // the run's newest map at or before step s (its first when all are later)
    const stepFor = (run, s) => run.steps.reduce((best, t) => (t <= s ? t : best),
                                                 run.steps.length ? run.steps[0] : -1);
    // one head's panel, cut out of the layer picture and magnified; the
    // whole picture when all heads are asked for or its size is not the
    // one the layout predicts
    const fit = (fig) => {
      const run = data.runs[Number(fig.dataset.run)], img = fig.querySelector('img');
      const box = img.parentNode, head = Number(headSel.value);
      const exact = img.naturalWidth === run.size[0] && img.naturalHeight === run.size[1];
      box.removeAttribute('style');
      img.removeAttribute('style');
      box.classList.remove('cropped');
      box.dataset.head = -1;
      if (head < 0 || head >= run.NH || !exact) return;
      const [x, y, w, h] = run.rects[head];
      const k = Math.max(1, Math.floor(Math.min(fig.clientWidth || 560, 560) / Math.max(w, h)));
      box.style.width = w * k + 'px';
      box.style.height = h * k + 'px';
      img.style.width = run.size[0] * k + 'px';
      img.style.left = -x * k + 'px';
      img.style.top = -y * k + 'px';
      box.classList.add('cropped');
      box.dataset.head = head;
    };
    const show = () => {
      const s = steps[Number(slider.value)], layer = Number(layerSel.value);
      byId('att-step-label').textContent = 'step ' + s;
      for (const fig of figs) {
        const run = data.runs[Number(fig.dataset.run)], img = fig.querySelector('img');
        const cap = fig.querySelector('figcaption'), t = stepFor(run, s);
        if (t < 0 || layer >= run.L) {
          img.hidden = true;
          cap.textContent = run.label + ': no map of layer ' + layer;
          continue;
        }
        const src = run.href + 'attn/step_' + String(t).padStart(6, '0') + '/layer_' + layer + '.png';
        img.hidden = false;
        if (img.getAttribute('src') !== src) img.src = src;
        else fit(fig);
        const link = document.createElement('a');
        link.href = src;
        link.textContent = src;
        const head = Number(headSel.value) < 0 ? 'all heads' : 'head ' + headSel.value;
        cap.replaceChildren(`${run.label}: step ${t}, layer ${layer}, ${head} \u2014 `, link);
      }
    };
    for (const fig of figs) fig.querySelector('img').addEventListener('load', () => fit(fig));
    for (const el of [layerSel, headSel, slider]) el.addEventListener('input', show);
    show();
  }
  const ckA = byId('ckpt-a'), ckB = byId('ckpt-b');
  if (ckA && ckB) {
    const command = () => {
      byId('ckpt-cmd').textContent = './qkscope compare ' + ckA.value + ' ' + ckB.value;
    };
    ckA.addEventListener('input', command);
    ckB.addEventListener('input', command);
    command();
  }
})();
