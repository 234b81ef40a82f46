/**
 * Learning-rate schedules, evaluated in JS once per step and fed to the graph as a scalar (see optimizers.ts).
 * Positions are in epochs (fractional), so a schedule means the same thing at any batch size.
 */
export type ScheduleConfig =
  | { type: 'constant'; warmupEpochs?: number }
  | { type: 'cosine'; minLr?: number; warmupEpochs?: number }
  | { type: 'step'; every: number; gamma?: number; warmupEpochs?: number };

export function learningRate(schedule: ScheduleConfig, baseLr: number, epochPos: number, totalEpochs: number): number {
  const warm = schedule.warmupEpochs ?? 0;
  if (warm > 0 && epochPos < warm) return (baseLr * (epochPos + 1e-9)) / warm;
  switch (schedule.type) {
    case 'constant':
      return baseLr;
    case 'cosine': {
      const minLr = schedule.minLr ?? 0;
      const span = Math.max(totalEpochs - warm, 1e-9);
      const progress = Math.min(Math.max((epochPos - warm) / span, 0), 1);
      return minLr + 0.5 * (baseLr - minLr) * (1 + Math.cos(Math.PI * progress));
    }
    case 'step':
      return baseLr * Math.pow(schedule.gamma ?? 0.1, Math.floor(epochPos / schedule.every));
  }
}
