// Node 20 (Debian's) lacks Promise.withResolvers (Node >= 22), which current js-libp2p
// dependencies (it-queue) call; this is the standard definition.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve, reject
    const promise = new this((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}
