// LSNs ("16/B374D848") and the WAL segment names that hold them.

export function parseLsn(lsn: string): bigint {
  const [hi, lo] = lsn.split('/');
  return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
}

export function segmentName(timeline: number, lsn: bigint, segmentSize: number): string {
  const segno = lsn / BigInt(segmentSize);
  const perId = 0x100000000n / BigInt(segmentSize);
  const hex = (n: bigint | number) => n.toString(16).toUpperCase().padStart(8, '0');
  return `${hex(timeline)}${hex(segno / perId)}${hex(segno % perId)}`;
}

/** Every segment from the one holding `start` to the one holding `stop`, inclusive. */
export function segmentsBetween(timeline: number, start: string, stop: string, segmentSize: number): string[] {
  const out: string[] = [];
  const size = BigInt(segmentSize);
  for (let at = (parseLsn(start) / size) * size; at <= parseLsn(stop); at += size) out.push(segmentName(timeline, at, segmentSize));
  return out;
}

/** "16MB" / "1GB" (SHOW wal_segment_size) → bytes. */
export function parseSettingBytes(text: string): number {
  const m = /^(\d+)\s*(kB|MB|GB)?$/.exec(text.trim());
  if (!m) throw new Error(`unexpected size setting ${text}`);
  const unit: Record<string, number> = { kB: 1024, MB: 1024 ** 2, GB: 1024 ** 3 };
  return Number(m[1]) * (m[2] ? unit[m[2]]! : 1);
}
