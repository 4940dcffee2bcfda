/**
 * out[e] = Σ_k weights[k]·terms[k][e] over whole buffers, the update of every multistep solver (a weighted sum of
 * the sample and earlier model outputs). Up to four terms go in one pass, summed in double precision and rounded
 * once; further terms (orders above 3) are added one pass each. `out` may be one of the terms (each element is read before it is
 * written).
 *
 * @param out - the destination, the terms' length
 * @param weights - the weight of each term
 * @param terms - the buffers to combine, at least `count`
 * @param count - how many terms to combine (at least 1)
 */
export function linearCombination(
  out: Float32Array,
  weights: ArrayLike<number>,
  terms: readonly Float32Array[],
  count: number,
): void {
  const [a, b, c, d] = [terms[0], terms[1], terms[2], terms[3]];
  const [wa, wb, wc, wd] = [weights[0], weights[1], weights[2], weights[3]];
  const n = out.length;
  // One loop per term count, so that no buffer is read for a term that is not there.
  switch (Math.min(count, 4)) {
    case 1:
      for (let e = 0; e < n; e++) out[e] = wa * a[e];
      break;
    case 2:
      for (let e = 0; e < n; e++) out[e] = wa * a[e] + wb * b[e];
      break;
    case 3:
      for (let e = 0; e < n; e++) out[e] = wa * a[e] + wb * b[e] + wc * c[e];
      break;
    default:
      for (let e = 0; e < n; e++) out[e] = wa * a[e] + wb * b[e] + wc * c[e] + wd * d[e];
  }
  for (let k = 4; k < count; k++) {
    const w = weights[k];
    const term = terms[k];
    for (let e = 0; e < n; e++) out[e] += w * term[e];
  }
}
