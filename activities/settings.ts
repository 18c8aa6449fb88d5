import type { FlowSettings } from '../workflows/shared/settings.js';

// Workflows read the worker's settings through an activity, so each run records the values it acted on in its history
// and a replay never depends on the environment of the replaying worker.
export function createSettingsActivities(settings: FlowSettings) {
  return {
    async loadSettings(): Promise<FlowSettings> {
      return settings;
    },
  };
}
